import HeraldCore
import NIOCore

/// A connection between its resume and live delivery: while its replay is fetched, live records are
/// held; then the replay is written, paced by the socket's writability, and the held records after
/// it, so the stream continues in offset order with no gap and no duplicate. Loop-confined, like the
/// connection that owns it.
final class ResumeState {
    struct Held {
        var stream: HeraldStream
        var offset: Int64
        var frame: ByteBuffer
    }

    struct Pending {
        var frame: ByteBuffer
        var live: Bool
    }

    /// The replay is being fetched: live records go to `held`.
    var fetching = true
    var held: [Held] = []
    /// Frames to write, in order: the replay, then the held and later live records.
    var backlog = CircularBuffer<Pending>()
    /// Bytes of live frames held or queued; over the outbound cap the connection is a slow consumer.
    var liveBytes = 0
    /// Streams whose client is ahead of this node (it came from a node further along): live records
    /// up to the client's offset are ones it already has.
    var skipThrough: [HeraldStream: Int64] = [:]

    /// The replay is being written: until the backlog is empty and the socket is under its cap again,
    /// the socket's fill is the replay's, not a slow consumer's.
    var pacing = false

    /// Whether live records must queue behind the replay rather than go straight to the socket.
    var isQueueing: Bool { fetching || pacing }

    func skips(_ stream: HeraldStream, _ offset: Int64) -> Bool {
        guard let through = skipThrough[stream] else { return false }
        return offset <= through
    }

    /// Queues a live record behind the replay; false when that goes over `cap` bytes.
    func queueLive(stream: HeraldStream, offset: Int64, frame: ByteBuffer, cap: Int) -> Bool {
        liveBytes += frame.readableBytes
        if fetching {
            held.append(Held(stream: stream, offset: offset, frame: frame))
        } else {
            backlog.append(Pending(frame: frame, live: true))
        }
        return liveBytes <= cap
    }

    /// The replay arrived (or failed: no frames): it goes first, then what was held, minus records
    /// the client already has.
    func release(replay: [[ByteBuffer]], skipThrough newSkips: [HeraldStream: Int64]) {
        skipThrough.merge(newSkips) { max($0, $1) }
        for frames in replay {
            for frame in frames { backlog.append(Pending(frame: frame, live: false)) }
        }
        for record in held {
            if skips(record.stream, record.offset) {
                liveBytes -= record.frame.readableBytes
            } else {
                backlog.append(Pending(frame: record.frame, live: true))
            }
        }
        held = []
        fetching = false
        pacing = true
    }

    /// Writes queued frames while the socket takes them; true (and no longer pacing) once the backlog
    /// is empty and the socket is under its cap.
    func drain(into channel: any Channel) -> Bool {
        var wrote = false
        while channel.isWritable, let next = backlog.popFirst() {
            channel.write(next.frame, promise: nil)
            if next.live { liveBytes -= next.frame.readableBytes }
            wrote = true
        }
        if wrote { channel.flush() }
        pacing = !(backlog.isEmpty && channel.isWritable)
        return !pacing
    }
}
