"""Talking to LM Studio: the HTTP/1.1 client (`http1`, with `proxy` rules), the API client (`client`),
the `lms` command line (`lms`) and finding the local server (`discovery`)."""
