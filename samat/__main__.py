from samat.cli import main

raise SystemExit(main())
