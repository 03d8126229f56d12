"""Wire codecs (pure: bytes in, bytes out) and the HTTP shell."""
