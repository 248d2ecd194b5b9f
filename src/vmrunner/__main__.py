from vmrunner.cli import main

main()
