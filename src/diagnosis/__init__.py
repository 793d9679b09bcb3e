"""Pure diagnosis core: numpy arrays in, alarm events out.

Nothing in this package performs I/O, imports asyncio, a database driver, an MQTT client or a
web framework. The signal catalogue lives here because diagnosis and decoding share it.
"""
