from autoloyal.cli import main

main()
