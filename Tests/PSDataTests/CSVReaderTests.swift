import Foundation
import PSCore
import XCTest
@testable import PSData

final class CSVReaderTests: TemporaryDirectoryTestCase {
    // The bundled CSV slice holds exactly the same samples as the IDX slice.
    func testSmallCSVMatchesIDX() throws {
        let csv = try CSVReader.read(path: mnist("small/train.csv"), header: false, labelColumn: .index(0))
        let images = try IDXReader.readImages(path: mnist("small/train-images-idx3-ubyte"))
        let labels = try IDXReader.readLabels(path: mnist("small/train-labels-idx1-ubyte"))
        XCTAssertEqual(csv.count, 1000)
        XCTAssertEqual(csv.width, 784)
        XCTAssertEqual(csv.features, images.pixels)
        XCTAssertEqual(csv.labels, labels.map(Float.init))
        XCTAssertEqual(Array(csv.labelLines.prefix(3)), [1, 2, 3])
    }

    // A header row is skipped and lets the label column be chosen by name, anywhere in the row.
    func testHeaderAndLabelByName() throws {
        let path = try write("named.csv", text: "a,label,b\n1,0,2\n3,1,4\n")
        let byName = try CSVReader.read(path: path, header: true, labelColumn: .name("label"))
        XCTAssertEqual(byName.count, 2)
        XCTAssertEqual(byName.width, 2)
        XCTAssertEqual(byName.features, [1, 2, 3, 4])
        XCTAssertEqual(byName.labels, [0, 1])
        XCTAssertEqual(byName.labelLines, [2, 3])
        let byIndex = try CSVReader.read(path: path, header: true, labelColumn: .index(1))
        XCTAssertEqual(byIndex.features, byName.features)
        XCTAssertEqual(byIndex.labels, byName.labels)
    }

    // Without a header every line is data, and the label may be the last column.
    func testNoHeaderLabelByIndex() throws {
        let path = try write("plain.csv", text: "1,2,7\n3,4,8\n")
        let table = try CSVReader.read(path: path, header: false, labelColumn: .index(2))
        XCTAssertEqual(table.count, 2)
        XCTAssertEqual(table.features, [1, 2, 3, 4])
        XCTAssertEqual(table.labels, [7, 8])
    }

    // \r\n endings, a missing final newline, blank lines and quoted fields all read like plain \n rows.
    func testLineEndingsBlankLinesAndQuotes() throws {
        let plain = try write("plain.csv", text: "1,2,3\n4,5,6\n")
        let windows = try write("windows.csv", text: "\r\n1,2,3\r\n\r\n  \r\n\"4\",5,\" 6 \"")
        let a = try CSVReader.read(path: plain, header: false, labelColumn: .index(0))
        let b = try CSVReader.read(path: windows, header: false, labelColumn: .index(0))
        XCTAssertEqual(a.features, b.features)
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertEqual(b.labelLines, [2, 5])
    }

    // Quoted header names may contain commas and doubled quotes.
    func testQuotedHeaderNames() throws {
        let path = try write("quoted.csv", text: "\"x, first\",\"the \"\"label\"\"\"\n1,2\n")
        let table = try CSVReader.read(path: path, header: true, labelColumn: .name("the \"label\""))
        XCTAssertEqual(table.features, [1])
        XCTAssertEqual(table.labels, [2])
    }

    // Decimal forms parse to the same Float that Swift's own parser gives, including long mantissas.
    func testNumberForms() throws {
        let texts = ["0", "-1.5e2", "+3", ".5", "5.", "1e-3", "0.1", "-0.000123", "2.5E+3", "123456789012",
                     "3.14159265358979323846264338", "1e-40", "6.02214076e23", "  7 ", "0.30000000000000004"]
        let path = try write("numbers.csv", text: texts.map { "0,\($0)" }.joined(separator: "\n"))
        let table = try CSVReader.read(path: path, header: false, labelColumn: .index(0))
        XCTAssertEqual(table.features, texts.map { Float($0.trimmingCharacters(in: .whitespaces))! })
    }

    // The same CSV gzip-compressed reads identically.
    func testGzipCSVMatchesPlain() throws {
        let plainPath = mnist("small/test.csv")
        let gzPath = try write("test.csv.gz", gzip(Array(try Data(contentsOf: URL(fileURLWithPath: plainPath)))))
        let a = try CSVReader.read(path: plainPath, header: false, labelColumn: .index(0))
        let b = try CSVReader.read(path: gzPath, header: false, labelColumn: .index(0))
        XCTAssertEqual(a.features, b.features)
        XCTAssertEqual(a.labels, b.labels)
    }

    // A non-numeric field names the line, the 1-based column, its header name and the text.
    func testNonNumericField() throws {
        let path = try write("bad.csv", text: "label,a,b\n1,2,3\n0,4,abc\n")
        let error = assertDataError(try CSVReader.read(path: path, header: true, labelColumn: .index(0)), contains: [path])
        XCTAssertEqual(error?.description, "\(path): line 3, column 3 ('b'): 'abc' is not a number; expected a decimal number such as 0.5 or -3e2")
        let noHeader = try write("bad2.csv", text: "1,2,3\n0,4x,5\n")
        assertDataError(try CSVReader.read(path: noHeader, header: false, labelColumn: .index(0)),
                        contains: ["line 2, column 2: '4x' is not a number"])
        let empty = try write("empty-field.csv", text: "1,2,3\n0,,5\n")
        assertDataError(try CSVReader.read(path: empty, header: false, labelColumn: .index(0)),
                        contains: ["line 2, column 2: empty field; expected a number"])
    }

    // A row with a different number of fields names its line and both counts.
    func testRaggedRow() throws {
        let path = try write("ragged.csv", text: "1,2,3\n4,5,6\n\n7,8\n")
        assertDataError(try CSVReader.read(path: path, header: false, labelColumn: .index(0)),
                        contains: [path, "line 4", "ragged row: found 2 fields, expected 3 like line 1"])
        let long = try write("long.csv", text: "a,b\n1,2\n3,4,5\n")
        assertDataError(try CSVReader.read(path: long, header: true, labelColumn: .index(0)),
                        contains: [long, "line 3", "found 3 fields, expected 2"])
    }

    // A label column name missing from the header is an error on data.label_column with the column
    // count; the header itself is not listed (the file may not be a CSV), only a name differing in case.
    func testUnknownLabelColumnName() throws {
        let path = try write("named.csv", text: "a,label,b\n1,0,2\n")
        let error = assertDataError(try CSVReader.read(path: path, header: true, labelColumn: .name("target")),
                                    contains: ["data.label_column", path, "no column named 'target' among the header's 3 columns"])
        XCTAssertFalse(error?.description.contains("'label'") ?? true, error?.description ?? "")
        assertDataError(try CSVReader.read(path: path, header: true, labelColumn: .name("Label")),
                        contains: ["no column named 'Label'", "column 2 is 'label' (names are case-sensitive)"])
    }

    // A label column name without a header cannot be resolved and says how to fix it.
    func testLabelNameWithoutHeader() throws {
        let path = try write("plain.csv", text: "1,2\n")
        assertDataError(try CSVReader.read(path: path, header: false, labelColumn: .name("label")),
                        contains: ["data.label_column", path, "label column 'label' is given by name, but the file has no header"])
    }

    // A label column index past the last column is rejected with the column count.
    func testLabelIndexOutOfRange() throws {
        let path = try write("plain.csv", text: "1,2\n")
        assertDataError(try CSVReader.read(path: path, header: false, labelColumn: .index(2)),
                        contains: ["data.label_column", path, "index 2 is out of range", "2 columns"])
    }

    // nan, inf and values beyond Float's range are rejected with line and column.
    func testNonFiniteValues() throws {
        for text in ["nan", "-inf", "Infinity", "1e39"] {
            let path = try write("nonfinite.csv", text: "x,y,z\n1,2,3\n4,\(text),6\n")
            assertDataError(try CSVReader.read(path: path, header: true, labelColumn: .index(0)),
                            contains: [path, "line 3, column 2 ('y')", "non-finite value '\(text)'"])
        }
        let label = try write("nan-label.csv", text: "nan,1\n")
        assertDataError(try CSVReader.read(path: label, header: false, labelColumn: .index(0)),
                        contains: ["line 1, column 1", "non-finite value 'nan'"])
    }

    // Files with no rows or no feature columns are rejected.
    func testEmptyAndFeaturelessFiles() throws {
        let empty = try write("empty.csv", text: "")
        assertDataError(try CSVReader.read(path: empty, header: false, labelColumn: .index(0)), contains: [empty, "file is empty"])
        let blank = try write("blank.csv", text: "\n\n")
        assertDataError(try CSVReader.read(path: blank, header: false, labelColumn: .index(0)), contains: [blank, "only blank lines"])
        let labelsOnly = try write("labels.csv", text: "1\n2\n")
        assertDataError(try CSVReader.read(path: labelsOnly, header: false, labelColumn: .index(0)),
                        contains: [labelsOnly, "need a label and at least one feature"])
    }

    // An unterminated quote is reported with its line.
    func testUnterminatedQuote() throws {
        let path = try write("quote.csv", text: "1,\"2\n")
        assertDataError(try CSVReader.read(path: path, header: false, labelColumn: .index(0)),
                        contains: [path, "line 1, column 2", "unterminated quoted field"])
    }
}
