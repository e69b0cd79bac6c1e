"""`python -m dl4nlp ...` is the `dl4nlp` command."""

from dl4nlp.instructor.cli import main

raise SystemExit(main())
