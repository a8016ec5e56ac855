// rttrain: a thin wrapper; the commands live in RepTokTrainCLI (Sources/RepTokTrainCLI).
import RepTokTrainCLI

RTTrain.main()
