"""Examples of services built on leaddb."""
