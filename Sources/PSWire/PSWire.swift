@_exported import PSCore
