import Synchronization

/// `/readyz` from state the node already has: the expensive part of readiness (a Kafka metadata query)
/// runs at most once per `refresh`, in the background, and every probe answers from its last result.
/// Only the first probe waits for a result. However many probes arrive, Kafka sees one query per
/// `refresh`.
final class ReadinessCache: Sendable {
    private struct State {
        var last: (reason: String?, at: ContinuousClock.Instant)?
        var refreshing: Task<String?, Never>?
    }

    private let check: @Sendable () async -> String?
    private let refresh: Duration
    private let state = Mutex(State())

    init(check: @escaping @Sendable () async -> String?, refresh: Duration) {
        self.check = check
        self.refresh = refresh
    }

    func reason() async -> String? {
        let now = ContinuousClock.now
        enum Step { case answer(String?), wait(Task<String?, Never>) }
        let step: Step = state.withLock { state in
            if let last = state.last, now - last.at < refresh { return .answer(last.reason) }
            let task = state.refreshing ?? startRefresh(&state)
            if let last = state.last { return .answer(last.reason) }
            return .wait(task)
        }
        switch step {
        case .answer(let reason): return reason
        case .wait(let task): return await task.value
        }
    }

    private func startRefresh(_ state: inout State) -> Task<String?, Never> {
        let task = Task { [check] in await check() }
        state.refreshing = task
        Task {
            let reason = await task.value
            self.state.withLock { state in
                state.last = (reason, ContinuousClock.now)
                state.refreshing = nil
            }
        }
        return task
    }
}
