import RepTokNN
