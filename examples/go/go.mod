module example.com/msaexample

go 1.19
