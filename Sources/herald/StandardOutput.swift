#if canImport(Glibc)
// Glibc declares `stdout` as a mutable global; it is only read here, once, before any other thread runs.
@preconcurrency import Glibc
#elseif canImport(Musl)
@preconcurrency import Musl
#endif

enum StandardOutput {
    /// stdout is block-buffered when it is not a terminal (a log file, `kubectl logs`, a pipe): what
    /// `serve --dev` prints (the development secret, API key and example URL) would show only at exit.
    /// One line at a time instead.
    static func flushEveryLine() {
        setvbuf(stdout, nil, _IOLBF, 0)
    }
}
