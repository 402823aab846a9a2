from pfl.cli import main

main()
