from wattserve.cli import main

main()
