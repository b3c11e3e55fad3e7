import Foundation

/// The standard `process_*` metrics (as Prometheus's own client libraries name them), read from
/// /proc at scrape time: CPU seconds, resident and virtual memory, open file descriptors and their
/// limit, threads, start time. swift-prometheus 2 leaves these to the application.
enum ProcessMetrics {
    static func text() -> String {
        var lines: [String] = []
        func add(_ name: String, _ type: String, _ help: String, _ value: Double) {
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) \(type)")
            lines.append("\(name) \(value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value))")
        }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            // Fields after "(comm)": state is field 3, so field N is at index N - 3.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            func field(_ n: Int) -> Double { fields.count > n - 3 ? Double(fields[n - 3]) ?? 0 : 0 }
            add("process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.", (field(14) + field(15)) / ticks)
            add("process_threads", "gauge", "Number of OS threads in the process.", field(20))
            add("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", field(23))
            add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", field(24) * page)
            if let uptime = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
               let secondsSinceBoot = Double(uptime.split(separator: " ").first ?? "") {
                let started = Date().timeIntervalSince1970 - secondsSinceBoot + field(22) / ticks
                add("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.", started.rounded())
            }
        }
        if let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            add("process_open_fds", "gauge", "Number of open file descriptors.", Double(descriptors.count))
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            add("process_max_fds", "gauge", "Maximum number of open file descriptors.", Double(limit.rlim_cur))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
