package synth

// The word lists below were written for this package. Every name part has
// at least four letters, so that a scan for a patient's name in a stolen
// file does not drown in chance matches of "Ann" or "Lee".

var femaleGiven = [...]string{
	"Abigail", "Adriana", "Aisha", "Alejandra", "Alice", "Amara", "Amelia", "Anika",
	"Annette", "Ariana", "Astrid", "Beatriz", "Bernadette", "Bianca", "Brenda", "Bridget",
	"Camila", "Carmen", "Cecilia", "Celeste", "Charlotte", "Chiara", "Chloé", "Claudia",
	"Cordelia", "Dahlia", "Daniela", "Deborah", "Delphine", "Diana", "Dolores", "Eleanor",
	"Elena", "Eliza", "Eloise", "Esperanza", "Esther", "Evelyn", "Fatima", "Felicity",
	"Fiona", "Florence", "Francesca", "Gabriela", "Genevieve", "Georgia", "Gloria", "Greta",
	"Gwendolyn", "Hannah", "Harriet", "Hazel", "Helena", "Imani", "Ingrid", "Isabel",
	"Isadora", "Jasmine", "Josephine", "Juanita", "Julia", "Kalani", "Katarina", "Keiko",
	"Lakshmi", "Laura", "Leilani", "Lorena", "Lucia", "Lydia", "Magdalena", "Margaret",
	"Marisol", "Matilda", "Maya", "Meiling", "Mercedes", "Miriam", "Nadia", "Naomi",
	"Natalia", "Noelle", "Olivia", "Ophelia", "Paloma", "Penelope", "Priya", "Rebecca",
	"Renée", "Rosalind", "Sabrina", "Sakura", "Samira", "Serena", "Simone", "Sofia",
	"Sunita", "Tabitha", "Teresa", "Valentina", "Vivian", "Wilhelmina", "Ximena", "Yasmin",
	"Yolanda", "Zainab", "Noémie",
}

var maleGiven = [...]string{
	"Abdullah", "Adrian", "Alejandro", "Alistair", "Ambrose", "Anders", "Andre", "Anton",
	"Arjun", "Arthur", "August", "Barnaby", "Benedict", "Bernard", "Caleb", "Casimir",
	"Cedric", "Charles", "Cornelius", "Cyrus", "Damian", "Darius", "Desmond", "Diego",
	"Dmitri", "Edmund", "Eduardo", "Elias", "Emeka", "Emmett", "Ernesto", "Ezekiel",
	"Felix", "Fernando", "Finnegan", "Francis", "Gabriel", "Gideon", "Gregory", "Gustavo",
	"Hamish", "Harold", "Hector", "Henrik", "Horace", "Hugo", "Ignacio", "Isaac",
	"Ismael", "Jasper", "Javier", "Jerome", "Joaquín", "Jonah", "José", "Julian",
	"Kenji", "Kwame", "Lamar", "Leopold", "Lorenzo", "Lucas", "Malcolm", "Marco",
	"Marcus", "Mateo", "Maxwell", "Milo", "Mohammed", "Nathaniel", "Nikolai", "Oliver",
	"Omar", "Oscar", "Patrick", "Percival", "Quentin", "Rafael", "Rashid", "Reginald",
	"Rohan", "Rupert", "Santiago", "Sebastian", "Silas", "Solomon", "Stefan", "Tariq",
	"Thaddeus", "Theodore", "Tobias", "Ulysses", "Victor", "Vikram", "Walter", "Wendell",
	"Xavier", "Yusuf", "Zachary",
}

var familyNames = [...]string{
	"Abernathy", "Achterberg", "Adeyemi", "Alcott", "Aldana", "Alvarado", "Andersen", "Arbuckle",
	"Ashworth", "Bachmann", "Balogun", "Bancroft", "Barrientos", "Beaumont", "Bellamy", "Bergstrom",
	"Blackwood", "Bonaventure", "Brannigan", "Bristow", "Calloway", "Carvalho", "Castañeda", "Castellano",
	"Chatterjee", "Chaudhry", "Cisneros", "Coggins", "Cordero", "Crowther", "Dalgaard", "Delacroix",
	"Donnelly", "Drummond", "Dunleavy", "Eastwood", "Ekwueme", "Ellsworth", "Espinoza", "Fairbanks",
	"Farouk", "Featherstone", "Fenwick", "Figueroa", "Fitzgerald", "Fonseca", "Gallardo", "Galloway",
	"Garrity", "Gonzaga", "Greenhalgh", "Gutierrez", "Hadley", "Halvorsen", "Hargrove", "Hashimoto",
	"Hawthorne", "Henriksen", "Hollister", "Holloway", "Iglesias", "Ingram", "Iwasaki", "Jablonski",
	"Jaramillo", "Kaczmarek", "Kapoor", "Kavanagh", "Kimura", "Kowalczyk", "Lachance", "Langford",
	"Larkin", "Lindqvist", "Lockhart", "Lombardi", "Mabry", "Macintyre", "Maldonado", "Marchetti",
	"Mbatha", "McAllister", "Mendoza", "Merriweather", "Montgomery", "Moreau", "Nakamura", "Navarro",
	"Nguyễn", "Nkemelu", "Novak", "Núñez", "Oakes", "Obuya", "Okonkwo", "Olmstead",
	"Ortega", "Osei", "Öztürk", "Pacheco", "Pemberton", "Peña", "Petrovic", "Pham",
	"Quintero", "Radcliffe", "Ramanathan", "Rasmussen", "Ravenscroft", "Redfern", "Rinaldi", "Rosenthal",
	"Rutherford", "Saavedra", "Salazar", "Santangelo", "Schreiber", "Sheffield", "Silverstein", "Sorensen",
	"Stanhope", "Strickland", "Sutherland", "Takahashi", "Tanaka", "Thistlewood", "Thornbury", "Tremblay",
	"Trevino", "Underhill", "Valdivia", "Vandermeer", "Vasquez", "Velasquez", "Wadsworth", "Wainwright",
	"Whitfield", "Wickham", "Winslow", "Yamamoto", "Yeboah", "Zamora", "Zielinski", "Quarrington",
}

// nicknames are names someone goes by, given as a second HumanName with
// use "nickname".
var nicknames = [...]string{
	"Bibi", "Birdie", "Bitsy", "Buddy", "Coco", "Dede", "Dodie", "Frankie", "Gigi", "Jojo",
	"Kiki", "Lulu", "Mimi", "Nonie", "Poppy", "Sunny", "Tippy", "Ziggy", "Boots", "Pepper",
}

var streetNames = [...]string{
	"Alder", "Aspen", "Birch", "Bramble", "Briar", "Brook", "Canal", "Cedar", "Chestnut",
	"Clover", "Cobble", "Cooper", "Cypress", "Dogwood", "Elm", "Fern", "Fox Hollow",
	"Garden", "Glen", "Granite", "Harbor", "Hawthorn", "Heather", "Hickory", "Highland",
	"Hillcrest", "Holly", "Juniper", "Lake", "Laurel", "Linden", "Magnolia", "Maple",
	"Meadow", "Mill", "Mulberry", "Oak", "Orchard", "Park", "Pine", "Pleasant", "Poplar",
	"Quarry", "Ridge", "River", "Rosewood", "Sassafras", "Spruce", "Stone", "Summit",
	"Sycamore", "Tamarack", "Thistle", "Valley", "Walnut", "Willow", "Windmill", "Wren",
}

var streetKinds = [...]string{
	"Street", "Avenue", "Road", "Lane", "Drive", "Way", "Court", "Place", "Terrace", "Boulevard",
}

// region is a state in which patients live and the shared organizations
// stand. Towns are invented; states, ZIP prefixes and area codes are real
// so that addresses look right, while the phone numbers stay in the block
// reserved for fiction (555-0100 to 555-0199).
type region struct {
	state     string
	offMin    int // standard-time UTC offset; daylight saving time is ignored
	zipLo     int // first three ZIP digits, inclusive
	zipHi     int
	areaCodes []string
	towns     []string
}

var regions = [...]region{
	{"MA", -300, 10, 27, []string{"413", "508", "774", "978"},
		[]string{"Ashbrook", "Millhaven", "Eastmere", "Quarry Hill", "Pellham Falls", "Westcombe", "Harrow Bay", "Linden Cross"}},
	{"OH", -300, 430, 458, []string{"216", "330", "419", "614"},
		[]string{"Cobblestone", "Fairmeadow", "Granger Mills", "North Alden", "Ridgeport", "Silver Run", "Thornton Springs", "Willowbend"}},
	{"CO", -420, 800, 816, []string{"303", "719", "720", "970"},
		[]string{"Aspen Flats", "Cedar Butte", "Elkhorn", "Granite Pass", "Juniper Mesa", "Pine Hollow", "Stonecrest", "Sage Valley"}},
	{"WA", -480, 980, 994, []string{"206", "253", "360", "509"},
		[]string{"Alder Point", "Cedar Sound", "Fernhill", "Gull Harbor", "Mistral Bay", "Salmonberry", "Tidewater", "Driftwood"}},
}

// Organization names: a town and one of these.
var (
	clinicKinds   = [...]string{"Family Medicine", "Community Health Center", "Primary Care Associates"}
	hospitalKinds = [...]string{"General Hospital", "Regional Medical Center", "Memorial Hospital", "Valley Hospital"}
)

// insurers are the payers in Shared. Medicare and Medicaid are the US public
// programs; the others are invented.
var insurers = [...]struct {
	name, slug, prefix string
	public             bool
}{
	{"Medicare", "medicare", "MCR", true},
	{"Medicaid", "medicaid", "MCD", true},
	{"Larkspur Mutual Health", "larkspur", "LKM", false},
	{"Tidewell Health Plans", "tidewell", "TWH", false},
	{"Brightmoor Benefit Cooperative", "brightmoor", "BMC", false},
	{"Quillfield Insurance Company", "quillfield", "QIC", false},
	{"Northmere Health Partners", "northmere", "NMP", false},
	{"Saltmarsh Mutual", "saltmarsh", "SMM", false},
}

var planNames = [...]string{"Bronze PPO", "Silver PPO", "Gold HMO", "Silver HMO", "Platinum PPO", "Basic EPO"}

// relations are people a note may mention.
var relations = [...]string{
	"sister", "brother", "neighbor", "daughter", "son", "husband", "wife", "coworker", "roommate", "grandmother",
}

var activities = [...]string{
	"a weekend of yard work", "a long drive", "a family reunion", "a soccer tournament",
	"starting a new job", "a camping trip", "helping with a move", "a week of night shifts",
	"a school field trip", "shoveling snow", "a church potluck", "a bike ride along the river",
}

// Notes are templates: @F is the patient's first name, @T their town, @R a
// relation, @A an activity, @N a number from 2 to 9, @W a number of weeks.
var (
	notesRespiratory = [...]string{
		"@F reports @N days of congestion and sore throat after @A; no shortness of breath. Advised fluids and rest.",
		"Symptoms started after @A. @F's @R has similar symptoms. Recheck if fever persists beyond @N days.",
		"@F describes a dry cough that is worse at night; sleeping propped up helps. Return in @W weeks if not better.",
		"Afebrile in clinic. @F drove in from @T and is tolerating fluids well. Supportive care discussed.",
	}
	notesInjury = [...]string{
		"Injury happened during @A. @F was able to bear weight afterwards; ice and elevation advised.",
		"@F was brought in by their @R from @T. Mechanism: fall during @A. No other injuries found.",
		"@F rates pain @N out of 10. Follow up with primary care in @W weeks; return sooner if numbness develops.",
	}
	notesChronic = [...]string{
		"@F keeps a home log; readings mostly steady over the last @W weeks. Continue current plan.",
		"Discussed diet with @F and their @R. Printed meal plan given; recheck labs in @W weeks.",
		"@F walks @N blocks near home in @T most days. Encouraged to keep it up.",
		"@F reports missing @N doses last month while caring for their @R. Pill organizer suggested.",
		"@F asked about side effects after reading about them online. Reassured; no changes today.",
	}
	notesGeneral = [...]string{
		"@F feels well overall and has been busy with @A. Plan reviewed together.",
		"@F came in with their @R. Questions answered; follow up in @W weeks.",
		"@F moved to @T recently and is establishing care here.",
	}
	notesAllergy = [...]string{
		"Reaction first noticed by @F's @R during @A.",
		"@F carries an action plan; last reaction @N years ago.",
	}
)
