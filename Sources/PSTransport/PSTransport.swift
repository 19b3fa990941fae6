import PSWire
