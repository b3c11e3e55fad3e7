import ArgumentParser
import Foundation

/// A client process of a bench run (`herald-bench <mode> --worker`, this executable again), spoken to
/// in JSON lines over its standard input and output: several processes hold more sockets than one may open.
final class BenchWorker {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var pending = Data()

    static func spawn(count: Int, total: Int, arguments: (_ count: Int, _ userOffset: Int) -> [String]) throws -> [BenchWorker] {
        let share = total / count
        // The running binary itself (from /proc/self/exe): argv[0] may be a bare name found on PATH.
        let executable = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0])
        return try (0..<count).map { index in
            let worker = BenchWorker()
            worker.process.executableURL = executable
            worker.process.arguments = arguments(index == count - 1 ? total - share * (count - 1) : share, index * share)
            worker.process.standardInput = worker.input
            worker.process.standardOutput = worker.output
            try worker.process.run()
            return worker
        }
    }

    /// Writes one line to the coordinator, unbuffered.
    static func reply(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    func send(_ line: String) throws {
        try input.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8))
    }

    /// The next JSON line the worker wrote.
    func readObject() throws -> [String: Any] {
        while !pending.contains(0x0A) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty {
                // End of its output: it has exited or is about to; its status says why.
                process.waitUntilExit()
                throw ValidationError("a bench worker (\(process.arguments?.first ?? "") --worker) exited early with status \(process.terminationStatus)")
            }
            pending.append(chunk)
        }
        let end = pending.firstIndex(of: 0x0A)!
        let line = pending[pending.startIndex..<end]
        pending = Data(pending[pending.index(after: end)...])
        return (try JSONSerialization.jsonObject(with: line)) as? [String: Any] ?? [:]
    }

    func finish() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}
