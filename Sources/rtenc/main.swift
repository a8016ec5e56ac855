// rtenc: a thin wrapper; the command lives in RepTokCLI (Sources/RepTokCLI).
import RepTokCLI

RTEnc.main()
