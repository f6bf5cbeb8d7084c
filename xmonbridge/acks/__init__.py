"""Acknowledgements sent back to the monitor (R12): see sink.py."""
