"""Who signs in and who is calling: the browser login (`flow`), sessions (`sessions`), the
native apps' authorization server (`native`), and the rules they rest on: cookies and the
open-redirect rule (`cookies`, `return_urls`)."""
