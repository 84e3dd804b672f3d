from toolbag.cli.app import main

main()
