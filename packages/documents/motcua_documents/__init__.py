"""The one-stop-shop official papers: forms as data, PDF rendering, PAdES signing, verification."""
