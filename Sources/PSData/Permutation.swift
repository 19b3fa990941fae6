import PSMath

/// The epoch's sample order: a pure function of (seed, epoch, count), so every worker derives the same
/// order without being sent it. Fisher–Yates, with the swap partner of position i drawn from Philox
/// counter (i, epochPermutation stream word for `epoch`, 0, 0).
public func epochPermutation(seed: UInt64, epoch: Int, count: Int) -> [Int32] {
    precondition(epoch >= 0, "epoch \(epoch) is negative")
    return fisherYates(count: count, seed: seed, streamWord: RandomStream.epochPermutation.word(UInt32(epoch)))
}

/// Deterministic validation split: returns (train indices, validation indices), each sorted ascending.
/// The validation samples are the first `valCount` entries of a Fisher–Yates permutation drawn from
/// the validationSplit stream, with valCount = count × fraction rounded, which must be in 1..<count.
public func validationSplit(seed: UInt64, count: Int, fraction: Double) throws -> (train: [Int], validation: [Int]) {
    let field = "data.validation_split"
    guard fraction.isFinite, fraction > 0, fraction < 1 else {
        throw DataError(field: field, message: "\(fraction) is not a fraction in (0, 1)")
    }
    let validationCount = Int((Double(count) * fraction).rounded())
    guard validationCount >= 1, validationCount < count else {
        throw DataError(field: field,
                        message: "\(fraction) of \(count) samples is \(validationCount) validation samples; need 1..<\(count) so that both splits are non-empty")
    }
    let order = fisherYates(count: count, seed: seed, streamWord: RandomStream.validationSplit.word(0))
    var isValidation = [Bool](repeating: false, count: count)
    for k in 0..<validationCount { isValidation[Int(order[k])] = true }
    var train = [Int]()
    var validation = [Int]()
    train.reserveCapacity(count - validationCount)
    validation.reserveCapacity(validationCount)
    for i in 0..<count {
        if isValidation[i] { validation.append(i) } else { train.append(i) }
    }
    return (train, validation)
}

/// Fisher–Yates from position count-1 down to 1; position i swaps with below(i + 1) of the first word
/// of Philox block (key: seed, counter: (i, streamWord, 0, 0)).
private func fisherYates(count: Int, seed: UInt64, streamWord: UInt32) -> [Int32] {
    precondition(count >= 0 && count <= DataLimits.samplesMax, "sample count \(count) out of range")
    var order = (0..<count).map { Int32($0) }
    var i = count - 1
    while i >= 1 {
        let word = Philox.block(key: seed, counter: (UInt32(i), streamWord, 0, 0)).0
        let j = Int(Philox.below(UInt32(i + 1), word: word))
        order.swapAt(i, j)
        i -= 1
    }
    return order
}
