from genir.cli import main

main()
