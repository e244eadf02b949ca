module github.com/ehrvault/ehrvault

go 1.26
