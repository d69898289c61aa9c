"""gRPC targets: one unary method called over one grpcio aio channel per target.

Rule: the gRPC driver sits behind :mod:`warmgate.traffic.driver`'s protocol like the web and SQL
drivers, and may import ``config/``, ``decide/``, ``kernel/`` and the rest of ``traffic/``; grpcio
and protobuf are imported only when a config has gRPC targets, and never by the long-lived run
processes. ``types.py`` finds the method's message types (a descriptor set file, or the server's
reflection service); ``driver.py`` compiles a target's templates and TLS, and sends the calls.
"""
