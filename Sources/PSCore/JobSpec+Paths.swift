extension JobSpec {
    /// Every data file the spec reads, with the field that names it (`data.train.images`, …).
    public var dataPaths: [(field: String, path: String)] {
        func files(_ f: DataFiles?, _ field: String) -> [(String, String)] {
            switch f {
            case let .idx(images, labels)?: return [("\(field).images", images), ("\(field).labels", labels)]
            case let .csv(path)?: return [("\(field).path", path)]
            case nil: return []
            }
        }
        return files(data.train, "data.train") + files(data.validation, "data.validation") + files(data.test, "data.test")
    }
}
