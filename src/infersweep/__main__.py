from infersweep.cli import main

main()
