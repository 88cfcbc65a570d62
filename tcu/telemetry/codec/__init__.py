"""The telemetry codec: the CBOR schema, COSE_Sign1 and strict CBOR decoding.

Pure functions of bytes and values: no files, no clocks, no sockets. The vehicle and the
backend share it.
"""
