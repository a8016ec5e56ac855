// rtgen: a thin wrapper; the command lives in RepTokCLI (Sources/RepTokCLI/Generate.swift).
import RepTokCLI

RTGen.main()
