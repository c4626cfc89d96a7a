from memcompress.cli import main

main()
