from benchmarks.commands import main

main()
