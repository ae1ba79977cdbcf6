from mien.cli import main

main()
