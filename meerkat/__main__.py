from meerkat.cli import main

main()
