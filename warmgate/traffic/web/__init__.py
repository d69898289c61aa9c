"""HTTP traffic: the HTTP driver, the journey driver, TLS failure diagnosis and the bounded
regex matcher of journey captures."""
