import ArgumentParser

import Foundation

/// What a program that is not built yet does when run: it says so on stderr and exits with
/// `EX_UNAVAILABLE` (69), so no script can mistake it for one that worked.
public enum UnbuiltTool {
    /// The paragraph its `--help` carries, naming what will build it.
    public static func discussion(plannedIn plan: String) -> String {
        "NOT BUILT YET: \(plan) Running it prints this and exits with status 69."
    }

    /// Reports on stderr that `name` is not built and returns the exit code to throw.
    public static func refuse(_ name: String) -> ExitCode {
        FileHandle.standardError.write(Data("\(name): not built yet; see `\(name) --help`.\n".utf8))
        return ExitCode(69)
    }
}
