import Logging
import NIOConcurrencyHelpers
import NIOCore
import PSWire

/// Who holds how many bytes of incomplete large frames, across a server's connections, against a cap
/// (`TransportLimits.incompleteFrameBytesMax`). Pure: each connection reports what it holds after a
/// read and learns whether it may read more; `Waker`s are how paused connections are told to ask again.
///
/// While the total is over the cap only the connection whose frame started first reads on, so some
/// frame always completes and frees its bytes (a frame that stalls instead is closed by its reader
/// after `incompleteFrameStallSeconds`). The total can therefore pass the cap by that one frame plus
/// what each other connection read before it was told to wait.
struct FrameBudgetLedger<Waker> {
    let bytesMax: Int
    private(set) var totalBytes = 0
    /// Per holding connection: bytes held, and when its frame started (lower tickets are older).
    private var holders: [ConnectionID: (bytes: Int, ticket: UInt64)] = [:]
    private var nextTicket: UInt64 = 0
    /// Connections told to wait, and how to wake them.
    private var waiting: [ConnectionID: Waker] = [:]

    init(bytesMax: Int) {
        self.bytesMax = bytesMax
    }

    /// `connection` now holds `bytes` (0: none). Returns whether it may read more and the waiting
    /// connections to wake (bytes were freed: each asks again). When it may not, `wake` is kept.
    mutating func hold(_ connection: ConnectionID, bytes: Int, wake: Waker) -> (mayRead: Bool, woken: [Waker]) {
        precondition(bytes >= 0, "a connection holds a negative number of bytes")
        let previous = holders[connection]?.bytes ?? 0
        totalBytes += bytes - previous
        if bytes == 0 {
            holders[connection] = nil
        } else if holders[connection] == nil {
            holders[connection] = (bytes, nextTicket)
            nextTicket += 1
        } else {
            holders[connection]!.bytes = bytes
        }
        var woken: [Waker] = []
        if bytes < previous {
            woken = Array(waiting.values)
            waiting = [:]
        }
        let mayRead = bytes == 0 || totalBytes <= bytesMax || oldestHolder == connection
        waiting[connection] = mayRead ? nil : wake
        return (mayRead, woken)
    }

    /// `connection` closed: its bytes are free and it waits no more.
    mutating func release(_ connection: ConnectionID) -> [Waker] {
        waiting[connection] = nil
        guard let held = holders.removeValue(forKey: connection) else { return [] }
        totalBytes -= held.bytes
        defer { waiting = [:] }
        return Array(waiting.values)
    }

    var waitingCount: Int { waiting.count }

    private var oldestHolder: ConnectionID? {
        holders.min { $0.value.ticket < $1.value.ticket }?.key
    }
}

extension FrameBudgetLedger: Sendable where Waker: Sendable {}

/// A server's `FrameBudgetLedger`, shared by its connections' readers (on any event loop).
final class IncompleteFrameBudget: Sendable {
    typealias Waker = @Sendable () -> Void
    private let ledger: NIOLockedValueBox<FrameBudgetLedger<Waker>>

    init(bytesMax: Int) {
        ledger = NIOLockedValueBox(FrameBudgetLedger(bytesMax: bytesMax))
    }

    /// See `FrameBudgetLedger.hold`; the woken connections are called here, outside the lock.
    func hold(_ connection: ConnectionID, bytes: Int, wake: @escaping Waker) -> Bool {
        let (mayRead, woken) = ledger.withLockedValue { $0.hold(connection, bytes: bytes, wake: wake) }
        for waker in woken { waker() }
        return mayRead
    }

    func release(_ connection: ConnectionID) {
        let woken = ledger.withLockedValue { $0.release(connection) }
        for waker in woken { waker() }
    }

    var totalBytes: Int { ledger.withLockedValue { $0.totalBytes } }
}

/// The first inbound handler of a server's connection (after TLS): cuts the byte stream into frames as
/// `EnvelopeDecoder` does, with what a server needs against its peers:
/// - before the connection's hello is through (`establish()`), frames over `helloFrameBytesMax` are
///   refused from their length prefix;
/// - the buffer grows with the bytes that arrived, and is cut down to what it holds after each read;
/// - an incomplete frame over `smallFrameBytesMax` counts against the server's `IncompleteFrameBudget`;
///   while the budget says wait, this connection is not read (its sender waits on TCP);
/// - an incomplete frame that gets no byte for `stallSeconds` while it is being read closes the
///   connection.
/// A refused frame goes down the pipeline as a `WireError`, and nothing more is decoded.
final class FrameReader: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Envelope
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let id: ConnectionID
    private let budget: IncompleteFrameBudget
    private let limits: ConnectionLimits
    private let logger: Logger
    private let onStall: @Sendable () -> Void
    private var context: ChannelHandlerContext?
    /// Bytes of the frames not yet complete (nil: none).
    private var pending: ByteBuffer?
    private var frameBytesMax: Int
    /// A frame was refused: the stream position is lost, nothing more is decoded.
    private var failed = false
    /// The budget said wait: `read` requests are held back until it says go.
    private var paused = false
    private var readHeld = false
    /// What this connection last told the budget it holds.
    private var charged = 0
    private var lastProgress = NIODeadline.now()
    private var stallTimer: Scheduled<Void>?

    /// `onStall` runs (on the event loop) when a stalled frame closes the connection, for the counters.
    init(id: ConnectionID, budget: IncompleteFrameBudget, limits: ConnectionLimits, logger: Logger,
         onStall: @escaping @Sendable () -> Void = {}) {
        self.id = id
        self.budget = budget
        self.limits = limits
        self.logger = logger
        self.onStall = onStall
        frameBytesMax = limits.helloFrameBytesMax
    }

    /// The connection's hello is through: from now on it may send frames up to `frameBytesMax`.
    func establish() {
        frameBytesMax = WireLimits.frameBytesMax
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        letGo()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        letGo()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var incoming = unwrapInboundIn(data)
        lastProgress = .now()
        if var buffer = pending.take() {
            buffer.writeBuffer(&incoming)
            pending = buffer
        } else {
            pending = incoming
        }
        decodeAvailable(context: context)
        guard !failed, context.channel.isActive else { return }
        account(context: context)
    }

    func read(context: ChannelHandlerContext) {
        if paused {
            readHeld = true
        } else {
            context.read()
        }
    }

    /// Fires every whole frame in `pending`, then keeps only the incomplete rest, in a buffer its size.
    private func decodeAvailable(context: ChannelHandlerContext) {
        guard var buffer = pending.take() else { return }
        var decoded = false
        do {
            // `frameBytesMax` is read each time: the hello just fired may have established the connection.
            while let envelope = try EnvelopeDecoder.nextEnvelope(from: &buffer, frameBytesMax: frameBytesMax) {
                decoded = true
                context.fireChannelRead(wrapInboundOut(envelope))
            }
        } catch {
            failed = true
            letGo()
            context.fireErrorCaught(error)
            return
        }
        guard buffer.readableBytes > 0 else { return }
        // The decoded frames share this storage (their tensors are read in place), and a read buffer can be
        // far larger than what it holds: copy the rest out so that it holds only itself.
        if decoded || buffer.capacity > 2 * buffer.readableBytes + 4096 {
            var rest = context.channel.allocator.buffer(capacity: buffer.readableBytes)
            rest.writeBuffer(&buffer)
            buffer = rest
        }
        pending = buffer
    }

    /// Tells the budget what this connection holds; pauses or resumes reading as it answers, and keeps
    /// the stall timer running while a frame is incomplete and being read.
    private func account(context: ChannelHandlerContext) {
        let charge = chargedBytes
        defer { charged = charge }
        // Small frames, the common case, never touch the shared budget.
        guard charge > 0 || charged > 0 || paused else {
            if pending != nil { armStallTimer(context: context) }
            return
        }
        let mayRead = budget.hold(id, bytes: charge, wake: waker(context: context))
        if mayRead {
            resumeReading(context: context)
        } else if !paused {
            paused = true
            logger.debug("waiting for room for an incomplete frame",
                         metadata: ["held_bytes": "\(charge)", "incomplete_frame_bytes_total": "\(budget.totalBytes)"])
        }
        if pending != nil && !paused { armStallTimer(context: context) }
    }

    /// The bytes this connection's incomplete frame counts against the budget: its buffer, once the
    /// frame is known to be over `smallFrameBytesMax`.
    private var chargedBytes: Int {
        guard let pending, let length = frameLength(pending), length > limits.smallFrameBytesMax else { return 0 }
        return pending.capacity
    }

    private func waker(context: ChannelHandlerContext) -> IncompleteFrameBudget.Waker {
        let reader = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        return { eventLoop.execute { reader.value.budgetWoke() } }
    }

    private func budgetWoke() {
        guard paused, !failed, let context, context.channel.isActive else { return }
        charged = chargedBytes
        if budget.hold(id, bytes: charged, wake: waker(context: context)) {
            resumeReading(context: context)
            if pending != nil { armStallTimer(context: context) }
        }
    }

    private func resumeReading(context: ChannelHandlerContext) {
        guard paused else { return }
        paused = false
        // Waiting was not the sender's fault: its time without progress starts now.
        lastProgress = .now()
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    private func armStallTimer(context: ChannelHandlerContext) {
        guard stallTimer == nil else { return }
        let reader = NIOLoopBound(self, eventLoop: context.eventLoop)
        stallTimer = context.eventLoop.scheduleTask(deadline: lastProgress + TimeAmount(seconds: limits.incompleteFrameStallSeconds)) {
            reader.value.stallTimerFired()
        }
    }

    private func stallTimerFired() {
        stallTimer = nil
        guard let context, !failed, let pending, !paused, context.channel.isActive else { return }
        let seconds = limits.incompleteFrameStallSeconds
        // Bytes arrived since the timer was armed: it runs again from the last of them.
        guard NIODeadline.now() >= lastProgress + TimeAmount(seconds: seconds) else {
            armStallTimer(context: context)
            return
        }
        let frame = frameLength(pending).map { "\($0 + WireLimits.frameHeaderBytes)" } ?? "?"
        logger.warning("closing connection: an incomplete frame got no byte for \(seconds) s (incompleteFrameStallSeconds)",
                       metadata: ["received_bytes": "\(pending.readableBytes)", "frame_bytes": "\(frame)"])
        failed = true
        letGo()
        onStall()
        context.close(promise: nil)
    }

    /// Frees what this connection holds: its bytes, its place in the budget, its timer.
    private func letGo() {
        pending = nil
        charged = 0
        stallTimer?.cancel()
        stallTimer = nil
        budget.release(id)
    }
}

extension Optional {
    /// The value, leaving nil behind (so a buffer taken out is uniquely referenced while it is changed).
    fileprivate mutating func take() -> Wrapped? {
        defer { self = nil }
        return self
    }
}
