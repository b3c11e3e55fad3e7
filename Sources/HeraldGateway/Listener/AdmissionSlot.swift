import Synchronization

/// One handshake's place in the node's connection count. It gives the place back exactly once,
/// whichever path the handshake ends on: an explicit `release()` where the end is seen, and its deinit
/// where nothing saw it (a client that hung up while its token was verified, an upgrade that never
/// completed), because whatever held it is gone with the channel. An upgraded connection takes the
/// place over (`handOver`), so no slot object stays alive per idle connection.
final class AdmissionSlot: Sendable {
    private let admission: Admission
    private let released = Atomic<Bool>(false)

    init(_ admission: Admission) {
        self.admission = admission
    }

    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        admission.returnSlot()
    }

    /// Passes the place to the connection, which then gives it back itself; nil if it was given back.
    func handOver() -> Admission? {
        released.exchange(true, ordering: .acquiringAndReleasing) ? nil : admission
    }

    deinit { release() }
}
