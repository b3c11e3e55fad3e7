// swift-tools-version:6.1
// Microbenchmarks of Herald's hot paths, with ordo-one/benchmark. A separate package, so the main
// build and the test suite stay light:   cd Benchmarks && swift package benchmark
import PackageDescription

let package = Package(
    name: "HeraldBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "herald", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "HeraldMicrobenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "HeraldCore", package: "herald"),
                .product(name: "HeraldKafka", package: "herald"),
                .product(name: "HeraldGateway", package: "herald"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "Benchmarks/HeraldMicrobenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
