// rteval: a thin wrapper; the command lives in RepTokCLI (Sources/RepTokCLI/Eval.swift).
import RepTokCLI

RTEval.main()
