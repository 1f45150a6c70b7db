from samat.cli.main import main

raise SystemExit(main())
