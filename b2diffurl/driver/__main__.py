import sys

from b2diffurl.driver.commands import main

sys.exit(main(sys.argv[1:]))
