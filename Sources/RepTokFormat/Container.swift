// .rtk container (in progress)
