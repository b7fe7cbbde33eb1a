// The seed's Node.js snippet (IoT Central continuous export docs), unchanged, run over the
// envelope files given as arguments; prints how many records it decoded and checks each
// Body is the JSON payload and each record names its device.
const avro = require('avsc');

function parse(filePath) {
    return new Promise((resolve, reject) => {
        const records = [];
        avro.createFileDecoder(filePath)
            .on('data', record => { records.push(record); })
            .on('end', () => resolve(records))
            .on('error', reject);
    });
}

(async () => {
    let n = 0;
    for (const file of process.argv.slice(2)) {
        const records = await parse(file);
        for (const r of records) {
            const body = JSON.parse(Buffer.from(r.Body).toString('utf-8'));
            if (body.signal !== 'mix' || !r.SystemProperties.connectionDeviceId) {
                throw new Error(`${file}: unexpected record ${JSON.stringify(r)}`);
            }
        }
        n += records.length;
    }
    console.log(n);
})().catch(e => { console.error(e); process.exit(1); });
