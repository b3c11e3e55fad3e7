import HeraldCore
import NIOCore

/// What the upgrader learned about one connection's handshake, for the handler that runs after it:
/// the identity and channels of an accepted handshake, or the refusal to answer with. Lives only
/// until the upgrade is done or refused.
/// @unchecked Sendable: touched only on the channel's event loop (the upgrader's callbacks and the
/// HTTP handler run there).
final class HandshakeState: @unchecked Sendable {
    enum Outcome: Sendable {
        case pending
        case refused(HandshakeRefusal)
        case accepted(Identity, channels: [String], resume: ResumeRequest)
        case echo
    }

    /// What the handshake asked to resume (the `cursor` and `epoch` query parameters), or, with
    /// `stored`, what the device's committed cursor resumes (`DeviceCursors`).
    enum ResumeRequest: Sendable {
        case none
        /// Known before any replay: a malformed cursor, or one from another epoch.
        case failed(RecoveryFailure, stored: Bool = false)
        case cursor(ResumeCursor, stored: Bool = false)
    }

    var outcome: Outcome = .pending
    var timeout: Scheduled<Void>?
    /// The connection's admission slot, from an accepted handshake until its connection takes it.
    var slot: AdmissionSlot?
}
