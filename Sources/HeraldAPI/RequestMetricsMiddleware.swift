import Hummingbird
import Metrics

/// Counts control-plane requests by endpoint and status (`herald_api_requests_total`) and times the
/// push endpoints from request to answer, which comes only after Kafka acknowledged every record
/// (`herald_push_duration_seconds`). Endpoints are a fixed set, so labels stay bounded.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let endpoint = Self.endpoint(request.uri.path)
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            record(endpoint, status: response.status.code, since: start)
            return response
        } catch let error as any HTTPResponseError {
            record(endpoint, status: error.status.code, since: start)
            throw error
        } catch {
            record(endpoint, status: 500, since: start)
            throw error
        }
    }

    private func record(_ endpoint: String, status: Int, since start: ContinuousClock.Instant) {
        Counter(label: "herald_api_requests_total", dimensions: [("endpoint", endpoint), ("status", String(status))]).increment()
        if endpoint == "/v1/push" || endpoint == "/v1/push/batch" {
            let elapsed = ContinuousClock.now - start
            Timer(label: "herald_push_duration_seconds", dimensions: [("endpoint", endpoint)])
                .recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
    }

    static func endpoint(_ path: String) -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        switch parts.count {
        case 1 where ["healthz", "readyz", "metrics"].contains(parts[0]): return "/" + parts[0]
        case 2 where parts[0] == "v1" && (parts[1] == "push" || parts[1] == "node"): return "/v1/" + parts[1]
        case 3 where parts[0] == "v1" && parts[1] == "push" && parts[2] == "batch": return "/v1/push/batch"
        case 4 where parts[0] == "v1" && parts[1] == "users" && parts[3] == "connections": return "/v1/users/{id}/connections"
        default: return "other"
        }
    }
}
