from ganpipe.cli import main

main(prog_name="ganpipe")
