"""flowmatch: conditional flow matching."""
