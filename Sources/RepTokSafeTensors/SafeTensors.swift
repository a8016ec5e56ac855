// safetensors: see SafeTensors.swift (in progress)
