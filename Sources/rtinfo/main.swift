// rtinfo: a thin wrapper; the command lives in RepTokCLI (Sources/RepTokCLI).
import RepTokCLI

RTInfo.main()
