from infersweep.cli import main

if __name__ == "__main__":  # not when a process pool (spawn) imports it as __mp_main__
    main()
